"""Kuwait's six governorates and their residential areas, in English and Arabic, for address forms."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Area:
    slug: str  # lowercase ascii with hyphens, unique across ALL governorates
    name_en: str
    name_ar: str


@dataclass(frozen=True, slots=True)
class Governorate:
    slug: str
    name_en: str
    name_ar: str
    areas: tuple[Area, ...]


# Areas within each governorate are ordered alphabetically by English name.
GOVERNORATES: tuple[Governorate, ...] = (
    Governorate(
        "capital",
        "Capital (Al Asimah)",
        "العاصمة",
        (
            Area("abdullah-al-salem", "Abdullah Al-Salem", "ضاحية عبدالله السالم"),
            Area("adailiya", "Adailiya", "العديلية"),
            Area("bneid-al-gar", "Bneid Al-Gar", "بنيد القار"),
            Area("daiya", "Daiya", "الدعية"),
            Area("dasma", "Dasma", "الدسمة"),
            Area("dasman", "Dasman", "دسمان"),
            Area("doha", "Doha", "الدوحة"),
            Area("faiha", "Faiha", "الفيحاء"),
            Area("granada", "Granada", "غرناطة"),
            Area("kaifan", "Kaifan", "كيفان"),
            Area("khaldiya", "Khaldiya", "الخالدية"),
            Area("kuwait-city", "Kuwait City", "مدينة الكويت"),
            Area("mansouriya", "Mansouriya", "المنصورية"),
            Area("mirqab", "Mirqab", "المرقاب"),
            Area("nahdha", "Nahdha", "النهضة"),
            Area("north-west-sulaibikhat", "North West Sulaibikhat", "شمال غرب الصليبيخات"),
            Area("nuzha", "Nuzha", "النزهة"),
            Area("qadsiya", "Qadsiya", "القادسية"),
            Area("qairawan", "Qairawan", "القيروان"),
            Area("qibla", "Qibla", "القبلة"),
            Area("qurtuba", "Qurtuba", "قرطبة"),
            Area("rawda", "Rawda", "الروضة"),
            Area("shamiya", "Shamiya", "الشامية"),
            Area("sharq", "Sharq", "شرق"),
            Area("shuwaikh", "Shuwaikh", "الشويخ"),
            Area("sulaibikhat", "Sulaibikhat", "الصليبيخات"),
            Area("surra", "Surra", "السرة"),
            Area("yarmouk", "Yarmouk", "اليرموك"),
        ),
    ),
    Governorate(
        "hawalli",
        "Hawalli",
        "حولي",
        (
            Area("anjafa", "Anjafa", "أنجفة"),
            Area("bayan", "Bayan", "بيان"),
            Area("bidea", "Bidea", "البدع"),
            Area("hawalli", "Hawalli", "حولي"),
            Area("hittin", "Hittin", "حطين"),
            Area("jabriya", "Jabriya", "الجابرية"),
            Area("maidan-hawalli", "Maidan Hawalli", "ميدان حولي"),
            Area("mishref", "Mishref", "مشرف"),
            Area(
                "mubarak-al-abdullah",
                "Mubarak Al-Abdullah (West Mishref)",
                "مبارك العبدالله - غرب مشرف",
            ),
            Area("nigra", "Nigra", "النقرة"),
            Area("rumaithiya", "Rumaithiya", "الرميثية"),
            Area("salam", "Salam", "السلام"),
            Area("salmiya", "Salmiya", "السالمية"),
            Area("salwa", "Salwa", "سلوى"),
            Area("shaab", "Shaab", "الشعب"),
            Area("shuhada", "Shuhada", "الشهداء"),
            Area("siddiq", "Siddiq", "الصديق"),
            Area("zahra", "Zahra", "الزهراء"),
        ),
    ),
    Governorate(
        "farwaniya",
        "Farwaniya",
        "الفروانية",
        (
            Area("abdullah-al-mubarak", "Abdullah Al-Mubarak", "عبدالله المبارك"),
            Area("abraq-khaitan", "Abraq Khaitan", "أبرق خيطان"),
            Area("andalus", "Andalus", "الأندلس"),
            Area("ardiya", "Ardiya", "العارضية"),
            Area("ashbeliya", "Ashbeliya", "إشبيلية"),
            Area("dhajeej", "Dhajeej", "الضجيج"),
            Area("farwaniya", "Farwaniya", "الفروانية"),
            Area("firdous", "Firdous", "الفردوس"),
            Area("jleeb-al-shuyoukh", "Jleeb Al-Shuyoukh", "جليب الشيوخ"),
            Area("khaitan", "Khaitan", "خيطان"),
            Area("omariya", "Omariya", "العمرية"),
            Area("rabia", "Rabia", "الرابية"),
            Area("rehab", "Rehab", "الرحاب"),
            Area("riggae", "Riggae", "الرقعي"),
            Area("sabah-al-nasser", "Sabah Al-Nasser", "صباح الناصر"),
            Area("south-abdullah-al-mubarak", "South Abdullah Al-Mubarak", "جنوب عبدالله المبارك"),
            Area("south-khaitan", "South Khaitan", "جنوب خيطان"),
            Area("west-abdullah-al-mubarak", "West Abdullah Al-Mubarak", "غرب عبدالله المبارك"),
        ),
    ),
    Governorate(
        "mubarak-al-kabeer",
        "Mubarak Al-Kabeer",
        "مبارك الكبير",
        (
            Area("abu-al-hasaniya", "Abu Al-Hasaniya", "أبو الحصانية"),
            Area("abu-fatira", "Abu Fatira", "أبو فطيرة"),
            Area("adan", "Adan", "العدان"),
            Area("fnaitees", "Fnaitees", "الفنيطيس"),
            Area("masayel", "Masayel", "المسايل"),
            Area("messila", "Messila", "المسيلة"),
            Area("mubarak-al-kabeer", "Mubarak Al-Kabeer", "مبارك الكبير"),
            Area("qurain", "Qurain", "القرين"),
            Area("qusour", "Qusour", "القصور"),
            Area("sabah-al-salem", "Sabah Al-Salem", "صباح السالم"),
            Area("wista", "Wista", "الوسطى"),
        ),
    ),
    Governorate(
        "ahmadi",
        "Ahmadi",
        "الأحمدي",
        (
            Area("abu-halifa", "Abu Halifa", "أبو حليفة"),
            Area("ahmadi", "Ahmadi", "الأحمدي"),
            Area(
                "ali-sabah-al-salem",
                "Ali Sabah Al-Salem (Umm Al-Hayman)",
                "علي صباح السالم - أم الهيمان",
            ),
            Area("bneider", "Bneider", "بنيدر"),
            Area("dhaher", "Dhaher", "الظهر"),
            Area("dhubaiya", "Dhubaiya", "الضباعية"),
            Area("egaila", "Egaila", "العقيلة"),
            Area("fahad-al-ahmad", "Fahad Al-Ahmad", "فهد الأحمد"),
            Area("fahaheel", "Fahaheel", "الفحيحيل"),
            Area("fintas", "Fintas", "الفنطاس"),
            Area("hadiya", "Hadiya", "هدية"),
            Area("jaber-al-ali", "Jaber Al-Ali", "جابر العلي"),
            Area("julaia", "Julaia", "الجليعة"),
            Area("khairan", "Khairan", "الخيران"),
            Area("mahboula", "Mahboula", "المهبولة"),
            Area("mangaf", "Mangaf", "المنقف"),
            Area("mina-abdullah", "Mina Abdullah", "ميناء عبدالله"),
            Area("nuwaiseeb", "Nuwaiseeb", "النويصيب"),
            Area("riqqa", "Riqqa", "الرقة"),
            Area("sabah-al-ahmad", "Sabah Al-Ahmad", "مدينة صباح الأحمد"),
            Area(
                "sabah-al-ahmad-sea-city",
                "Sabah Al-Ahmad Sea City",
                "مدينة صباح الأحمد البحرية",
            ),
            Area("sabahiya", "Sabahiya", "الصباحية"),
            Area("wafra", "Wafra", "الوفرة"),
            Area("zour", "Zour", "الزور"),
        ),
    ),
    Governorate(
        "jahra",
        "Jahra",
        "الجهراء",
        (
            Area("abdali", "Abdali", "العبدلي"),
            Area("amghara", "Amghara", "أمغرة"),
            Area("jaber-al-ahmad", "Jaber Al-Ahmad", "مدينة جابر الأحمد"),
            Area("jahra", "Jahra", "الجهراء"),
            Area("kabd", "Kabd", "كبد"),
            Area("mutlaa", "Mutlaa", "المطلاع"),
            Area("naeem", "Naeem", "النعيم"),
            Area("nasseem", "Nasseem", "النسيم"),
            Area("oyoun", "Oyoun", "العيون"),
            Area("qasr", "Qasr", "القصر"),
            Area("saad-al-abdullah", "Saad Al-Abdullah", "سعد العبدالله"),
            Area("salmi", "Salmi", "السالمي"),
            Area("subiya", "Subiya", "الصبية"),
            Area("sulaibiya", "Sulaibiya", "الصليبية"),
            Area("taima", "Taima", "تيماء"),
            Area("waha", "Waha", "الواحة"),
        ),
    ),
)

GOVERNORATES_BY_SLUG: dict[str, Governorate] = {g.slug: g for g in GOVERNORATES}

# Area slug -> (governorate, area). Area slugs are unique across all governorates.
AREAS_BY_SLUG: dict[str, tuple[Governorate, Area]] = {
    a.slug: (g, a) for g in GOVERNORATES for a in g.areas
}


def area_in_governorate(governorate_slug: str, area_slug: str) -> bool:
    """Return True if ``area_slug`` is an area of the governorate ``governorate_slug``."""
    entry = AREAS_BY_SLUG.get(area_slug)
    return entry is not None and entry[0].slug == governorate_slug

"""Where product images live: seeded ones in /static, staff uploads in the media folder (/media)."""
from __future__ import annotations

MEDIA_URL = "/media/"
PLACEHOLDER = "/static/products/placeholder.svg"


def image_url(image: str) -> str:
    """The URL a browser loads a product's image from."""
    if not image:
        return PLACEHOLDER
    return image if image.startswith(MEDIA_URL) else "/static/" + image

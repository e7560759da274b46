"""A server-rendered Kuwaiti storefront that takes payments through KNET."""
import sys

# httpx imports its command-line client whenever rich, click and pygments are installed (Litestar's
# own CLI brings them). The shop never runs it, and it cost every worker 5 MB of its 100 MB. A None
# entry makes that optional import fail as httpx expects when they are missing.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

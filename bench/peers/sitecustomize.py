"""Redirects Close API calls of a peer connector to a local emulator (copied to .peers/shim/).

Active only when this folder is on PYTHONPATH and CLOSE_BASE_URL is set (e.g.
http://127.0.0.1:8765/api/v1/). Neither Airbyte's nor Singer's Close connector has a base-URL
option, so this rewrites Close's URL prefixes inside requests' HTTPAdapter.send and drops the
proxies resolved for the original host. From close-api research notes (peers.md, section 4).
"""

import os

_BASE = os.environ.get("CLOSE_BASE_URL", "").rstrip("/")
if _BASE:
    _PREFIXES = (
        "https://api.close.com/api/v1",
        "https://app.close.io/api/v1",
        "https://api.close.io/api/v1",
        "https://app.close.com/api/v1",
    )
    try:
        import requests.adapters as _adapters

        _orig_send = _adapters.HTTPAdapter.send

        def _send(self, request, *args, **kwargs):
            for p in _PREFIXES:
                if request.url.startswith(p):
                    request.url = _BASE + request.url[len(p) :]
                    if len(args) >= 5:  # (stream, timeout, verify, cert, proxies)
                        args = args[:4] + ({},) + args[5:]
                    else:
                        kwargs["proxies"] = {}
                    break
            return _orig_send(self, request, *args, **kwargs)

        _adapters.HTTPAdapter.send = _send
    except Exception:
        pass

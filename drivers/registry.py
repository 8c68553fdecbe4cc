"""Open a device by URL: the scheme picks the driver, as pyserial's serial_for_url does.

Drivers register themselves with `@register(kind, scheme)`; the modules listed in `_BUILTIN`
are imported lazily so that opening a serial port does not import pynetdicom or OpenCV.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlsplit

from drivers import url_options

_REGISTRY: dict[tuple[str, str], Callable] = {}

# (kind, scheme) -> module that registers it; imported on first use of the scheme.
_BUILTIN: dict[tuple[str, str], str] = {
    ("xray", "spool"): "drivers.spool",
    ("xray", "dicos-scp"): "drivers.dicos_scp",
    ("xray", "capture"): "drivers.capture",
    ("iq", "rtltcp"): "drivers.rtltcp",
    ("iq", "rtlsdr"): "drivers.rtlsdr_usb",
    # the scanner's control link: our serial:// form plus every pyserial URL handler
    ("control", "serial"): "drivers.scanner_link",
    ("control", "socket"): "drivers.scanner_link",
    ("control", "loop"): "drivers.scanner_link",
    ("control", "rfc2217"): "drivers.scanner_link",
    ("control", "spy"): "drivers.scanner_link",
}


# (kind, scheme) -> what reads (and checks) the URL's query, without importing the driver
_URL_OPTIONS: dict[tuple[str, str], Callable] = {("xray", "spool"): url_options.spool_options,
                                                 ("xray", "dicos-scp"): url_options.dicos_scp_options}


class UnknownScheme(ValueError):
    pass


def register(kind: str, scheme: str):
    def deco(factory: Callable) -> Callable:
        _REGISTRY[(kind, scheme)] = factory
        return factory

    return deco


def declare(kind: str, scheme: str, module: str) -> None:
    _BUILTIN[(kind, scheme)] = module


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def schemes(kind: str) -> list[str]:
    return sorted({s for (k, s) in list(_BUILTIN) + list(_REGISTRY) if k == kind})


def _factory(kind: str, url: str) -> Callable:
    sch = scheme_of(url)
    key = (kind, sch)
    if key not in _REGISTRY and key in _BUILTIN:
        importlib.import_module(_BUILTIN[key])
    if key not in _REGISTRY:
        raise UnknownScheme(
            f"no {kind} driver for URL scheme '{sch}://' (known: {', '.join(schemes(kind)) or 'none'})"
        )
    return _REGISTRY[key]


def open_device(kind: str, url: str, **opts):
    return _factory(kind, url)(url, **opts)


def validate_url(kind: str, url: str) -> None:
    """Raises UnknownScheme for a URL no driver of that kind accepts (used by config checks).

    Checks the scheme table only, without importing the driver, so that `check-config` stays fast
    and does not need pynetdicom or OpenCV to say a URL is well-formed.
    """
    sch = scheme_of(url)
    if (kind, sch) in _URL_OPTIONS:  # a scheme whose options are checked too (raises ValueError)
        _URL_OPTIONS[(kind, sch)](url)
    if (kind, sch) not in _REGISTRY and (kind, sch) not in _BUILTIN:
        raise UnknownScheme(
            f"no {kind} driver for URL scheme '{sch}://' (known: {', '.join(schemes(kind)) or 'none'})"
        )


def open_frame_source(url: str, **opts):
    return open_device("xray", url, **opts)


def open_iq_source(url: str, **opts):
    return open_device("iq", url, **opts)


def open_control_link(url: str, **opts):
    return open_device("control", url, **opts)

"""`make models`: train every shipped model, one after the other.

The X-ray detector always; the radio classifier when its training module is present (it is
written by another part of the project and may not exist in a checkout yet).
"""

from __future__ import annotations

import importlib.util
import sys


def main() -> int:
    from models.xray import train as xray_train

    rc = xray_train.main([])
    if rc:
        return rc
    if importlib.util.find_spec("models.rf") is not None and importlib.util.find_spec("models.rf.train") is not None:
        from models.rf import train as rf_train

        rc = rf_train.main()
    else:
        print("models.rf.train not present: radio classifier not trained", file=sys.stderr)
    return rc or 0


if __name__ == "__main__":
    raise SystemExit(main())

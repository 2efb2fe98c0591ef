"""Score raw images and videos with an export folder, without torch (forensics/predict.py).

    python scripts/predict.py EXPORT_DIR FILE_OR_FOLDER [...] [--allow-unvalidated] [--out results.jsonl]

One JSON line per item: status (scanned, no_face, empty, unsupported, decode_error, oversized,
timeout, missing, refused, error), reason, SHA-256, calibrated probability and verdict band, as
the evidence scan writes them. Exit status 0, or 3 when some item could not be scanned.
"""

import sys

from faketrace.forensics.predict import main

if __name__ == "__main__":
    sys.exit(main())

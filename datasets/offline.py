"""Libraries that would phone home are told not to, before they are first imported.

ONNX Runtime (1.2x on Linux) starts a background thread at import that uploads usage telemetry
to Microsoft (DNS lookups of mobile.events.data.microsoft.com about ten seconds later, then an
HTTPS request); `onnxruntime.disable_telemetry_events()` does not stop it, the environment variable
ORT_DISABLE_TELEMETRY does, and only when it is set before `import onnxruntime`. albumentations
asks PyPI for a newer version when it is imported. Evidence and training data never leave the
machine, and neither does the fact that faketrace ran: `datasets/io.py`, which every faketrace
entry point imports before any of those libraries, imports this module.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {"ORT_DISABLE_TELEMETRY": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}

os.environ.update(OFFLINE_ENV)

"""X-ray contraband detection: dual-energy preprocessing, the ONNX detector (ours and users'
YOLO / end-to-end layouts), a physics baseline, evaluation and DICOS TDR output."""

from typing import Literal, get_args

CLASSES: tuple[str, ...] = ("narcotics", "weapon", "currency", "concealment")

# Here rather than in detector.py / tdr.py: the agent's config validates against them, and
# importing those modules would bring onnxruntime, OpenCV and pydicom into every config check.
# The ONNX output layouts the detector decodes (detector.py):
Layout = Literal["zastava", "yolo", "yolov5", "e2e"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
# The threat categories a DICOS report may give (tdr.py): the defined terms the independent DICOS
# toolkit reads back as themselves; any other word it reads as an unknown category. A user's own
# model's classes take theirs from the config (xray_detector.threat_categories), else ANOMALY.
THREAT_CATEGORIES: tuple[str, ...] = ("ANOMALY", "CONTRABAND", "PI", "EXPLOSIVE", "LAPTOP", "PHARMACEUTICAL", "OTHER")

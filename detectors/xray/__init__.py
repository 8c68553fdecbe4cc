"""X-ray contraband detection: dual-energy preprocessing, the ONNX detector (ours and users'
YOLO / end-to-end layouts), a physics baseline, evaluation and DICOS TDR output."""

CLASSES: tuple[str, ...] = ("narcotics", "weapon", "currency", "concealment")

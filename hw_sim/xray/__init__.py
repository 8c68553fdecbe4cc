"""The simulated X-ray scanner: physics, scenes, datasets, and the ways images leave a scanner.

physics.py     areal densities -> dual-energy uint16 transmission (Beer-Lambert, noise, blur, artefacts)
draw.py        polygons in cm -> anti-aliased stamps -> per-material density maps
builder.py     the Scene being built: pose, interior, hiding places, ground truth
contents.py    bags and their ordinary contents
contraband.py  narcotics, weapons, currency, concealment, with their hiding places
scene.py       the public API: make_bag, Bag, GroundTruth, choose_contraband
dataset.py     labelled datasets on disk (write_dataset)
dicos.py       DICOS DX files (docs/dicos.md)
spool.py       atomic drops into spool folders; PNG/TIFF encoders; damaged files for faults
cstore.py      C-STORE pushes (pynetdicom SCU)
mjpeg.py       the operator display as MJPEG over HTTP; display.py its pseudo-colour
device.py      the scanner device a scenario runs (ScannerSection, start)
replay.py      a folder of field images served into a spool folder
"""

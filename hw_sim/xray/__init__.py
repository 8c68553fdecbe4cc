"""The simulated X-ray scanner: physics, scenes, datasets, and the ways images leave a scanner.

physics.py  areal densities -> dual-energy uint16 transmission
scene.py    bags, contents, contraband, exact ground truth (make_bag)
dataset.py  labelled datasets on disk (write_dataset)
"""

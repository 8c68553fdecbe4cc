"""Central command: the hub that receives alerts from every checkpoint, its store, and the dashboard."""

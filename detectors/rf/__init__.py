"""Radio monitoring: IQ blocks in, emitters and findings out.

frontend  cu8/complex64 -> spectrogram, per-bin noise floor, CFAR, bursts
tracker   bursts -> emitters tracked across blocks and scan hops
channel   an emitter's burst -> a fixed-length 2xN snippet for the classifier
classifier  ONNX CNN over those snippets
judge     frequency plan + watchlist -> findings; spectrogram PNG and SigMF evidence
monitor   the per-receiver object the agent runs
evaluate  detection and classification figures on a simulator dataset

Pure: nothing here imports drivers/ or edge_agent/.
"""

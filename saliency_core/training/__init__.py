"""What the bundled models are made of: the procedural shapes data set, the small CNN, the
MiniLM sentiment wrapper with its hand-written sentences, and the script that trains them all
(``python -m saliency_core train-bundled``). Loading them is saliency_core.models' job."""

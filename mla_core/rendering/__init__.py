"""How render.py drives Manim: qualities, one manim process per scene, manifests that say
when a render is up to date, and joining scene videos into one. Imports neither Manim nor
torch, so `render.py list` stays instant."""

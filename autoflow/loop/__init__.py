"""The self-optimizing loop (issue 20): model registry, drift detection, challengers
trained from the champion on recent outcomes, paired champion-vs-challenger replays, and
the offline loop ``autoflow loop``."""

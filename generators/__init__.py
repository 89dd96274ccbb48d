"""Workload generators: fitted to a real trace, they synthesize new workloads.

``fit`` learns job attributes (``table``: kind, GPUs, share, type constraint, duration,
QoS, CPU, memory, SLO, user) with a tabular model (``models``: SDV's Gaussian copula,
CTGAN or TVAE, or the permissive ``empirical`` copula) and arrivals with a separate
model (``arrivals``: rate by hour of week, bursty gaps), so that load can be scaled
without changing the job mix. A trace with workflows also teaches it its pipelines
(``pipelines``: shapes, per-stage attributes, their share and arrivals), so that samples
hold whole pipelines with valid dependencies. ``report`` measures what a synthetic
workload gets right and wrong. ``sampler`` lets the learning environment draw episodes from a generator.
"""

from .generator import FittedGenerator, fit_generator, load_generator

__all__ = ["FittedGenerator", "fit_generator", "load_generator"]

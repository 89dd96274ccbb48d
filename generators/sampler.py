"""Episodes drawn from a fitted generator, for the learning environment.

Source ``gen:FILE`` (a file from ``autoflow generate fit``) in ``autoflow train
--workloads`` or ``ClusterSchedulingEnv(workloads=...)``: every episode is a fresh
sample with a seed from the episode's rng, sized and loaded like the other sources. A
generator fitted on a trace with workflows draws whole pipelines with their dependencies
(``generators.pipelines``), which the simulator honours.
"""

from __future__ import annotations

from autoflow.envs.samplers import GENERATOR_SAMPLERS, EpisodeSpec, Sampler

from .generator import load_generator


class GeneratorSampler(Sampler):
    def __init__(self, source: str, cluster: str, spec: EpisodeSpec):
        super().__init__(source, cluster, spec)
        self.generator = load_generator(source.split(":", 1)[1])

    def draw_jobs(self, rng):
        n = int(rng.integers(self.spec.jobs[0], self.spec.jobs[1] + 1))
        # the validation part of a spec draws from another range of seeds
        seed = int(rng.integers(2**31)) * 2 + (1 if self.spec.part[0] > 0 else 0)
        return self.generator.sample(n, seed=seed).shifted()


def register() -> None:
    GENERATOR_SAMPLERS["gen"] = GeneratorSampler

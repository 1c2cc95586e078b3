"""The source model as the reference: the runner that executes it, and its outputs on the example inputs.

Export (its parity probe), validation, ``explain``, ``--keep-float`` and artifacts made elsewhere all run
the source the same way, so this sits below every one of them.
"""

from __future__ import annotations

from . import progress
from .core.errors import OndeviceError, input_error, one_line
from .core.quiet import quiet
from .core.specs import TensorSpec
from .runtimes import SOURCE_RUNTIMES, get_runner_class


def reference_runner(source, threads: int = 1):
    """The runner that executes the source model itself."""
    if source.framework == "onnx":
        return get_runner_class("onnxruntime")(source.path, threads=threads)
    return get_runner_class(SOURCE_RUNTIMES[source.framework])(source, threads=threads)


def fill_source_outputs(source, threads: int = 1) -> dict:
    """Run the source once on its example to learn its outputs; returns those outputs."""
    feeds = source.example_feeds()
    try:
        with quiet():
            runner = reference_runner(source, threads)
            result = runner.run(feeds)
    except OndeviceError:
        raise
    except Exception as exc:
        raise input_error(f"the source model failed on its example inputs: {one_line(exc, 400)}", exc) from exc
    if source.framework == "onnx":
        source.outputs = list(runner.outputs)
    else:
        source.outputs = [TensorSpec(name, tuple(value.shape), str(value.dtype)) for name, value in result.items()]
    return result


class SourceNoise:
    """The source's rounding noise per output (``validators.parity.source_noise``) on ``samples``, measured
    once, when a float output first misses its default atol: by the export's parity probe on the example,
    by validation on its samples. A source that fails that run widens nothing (an empty result)."""

    def __init__(self, make_runner, samples: list, reference: list):
        self.make_runner, self.samples, self.reference = make_runner, samples, reference
        self.noise: dict | None = None

    def __call__(self) -> dict:
        from ondevice.validators.parity import source_noise

        if self.noise is None:
            progress.stage("source", "measuring its own rounding noise (an fp32 output missed its atol)")
            try:
                with quiet():
                    self.noise = source_noise(self.make_runner().run, self.samples, self.reference)
            except Exception:  # the source ran on these inputs already; a failure here widens nothing
                self.noise = {}
        return self.noise

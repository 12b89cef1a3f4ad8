"""How a published pipeline names its models: `<name>` is the model callers use, its steps `<name>_<suffix>`.

The one place the convention is spelled (the exporter writes it, the client finds a classifier's postprocess step
by it when the config API is admin-only); everything else asks the repository layer (`tuneship.repository`).
"""

STEP_SUFFIXES = {"tokenizer": "_tokenizer", "preprocess": "_preprocess", "graph": "_model",
                 "postprocess": "_postprocess"}


def step_model(pipeline: str, step: str) -> str:
    """The model name of `step` ("tokenizer", "preprocess", "graph", "postprocess") of the ensemble `pipeline`."""
    if step not in STEP_SUFFIXES:
        raise ValueError(f"unknown pipeline step {step!r}; steps: {', '.join(STEP_SUFFIXES)}")
    return pipeline + STEP_SUFFIXES[step]

"""Code generation: what every target shares (the target rows and interface, the
assembler, the scalar printer, the runtime pasted into every module) and one package per
target (``cpu/``, ``numpy/``, ``cuda/``); docs/architecture.md shows the layout."""

"""Tools around the research code: runner, report site, benchmark, preflight."""

"""Tools around the research code: runner, report site, benchmark, preflight.

- ``runner``       runs the numbered notebooks with a profile through papermill and publishes them
                   (``python -m hemasuite.tools.runner``, ``make reports``)
- ``site``         the report site: ``reports/index.html``, notebook pages, ``docs/`` pages, screenshot
- ``bench``        the performance benchmark (``python -m hemasuite.tools.bench``, ``make bench``)
- ``readme``       the results page's tables (``docs/results.md``) from the ``cpu`` comparison
                   (``python -m hemasuite.tools.readme``, ``make readme``)
- ``paper_check``  the ``paper`` profile's preflight: every model built, one step timed, the full
                   run's wall time estimated (``python -m hemasuite.tools.paper_check``, ``make paper-check``)
- ``paper_stages`` the networks of each notebook the preflight times, and the work of its full run
- ``precision_choice``  float32 vs mixed_bfloat16 on CPU, compared on validation accuracy
- ``compare_splits``  do two runs put the same images on each side of every split?
                   (``python -m hemasuite.tools.compare_splits OLD NEW``)
"""

"""The report layer: everything that reads finished runs and never trains.

- ``paper``: the paper's numbers, one ``TableSpec`` per table (rows, columns, source).
- ``tables``: a table's files (Markdown, CSV, LaTeX) from the runs' metrics, paper beside ours.
- ``pose``: how much of the generator's distortion each transformer removed.
- ``figures``: the paper's figures and training animations from finished runs.
- ``time_to_accuracy``: each row's watched error against training minutes.
- ``analysis``: the pose table and the figures of one schedule's finished runs.
- ``document``: ``outputs/report.{md,html}``, everything above in one page.
"""

from boxseg.overview import overview_page, overview_rst
from boxseg.workflow import run_step


def step(s):
    overview_rst(".", s.output.front, what_ran=s.params.what_ran)
    overview_page(".", s.output.page, methods=s.params.methods, what_ran=s.params.what_ran)


run_step(snakemake, step)

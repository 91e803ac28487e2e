from concurrent.futures import ProcessPoolExecutor

from boxseg.phantom import write_phantom_case
from boxseg.workflow import run_step


def step(s):
    with ProcessPoolExecutor(max_workers=s.threads) as pool:
        for done in [pool.submit(write_phantom_case, *case) for case in zip(s.params.seeds, s.output.images, s.output.labels)]:
            done.result()


if __name__ == "__main__":  # the pool's workers may re-import this script (spawn)
    run_step(snakemake, step)

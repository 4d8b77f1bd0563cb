HELP = "random-configuration regression: random valid designs through init, rtl, lint and sim"
DESCRIPTION = """Draw N valid designs from seeds S, S+1, ..., S+N-1 (image sizes from 1 to 9
pixels a side, 1 to 8 activation bits, w_dup / x_dup from the legal divisors, k 1 and 3, both
max-pool kinds, random legal foldings, arithmetics and pre-add, 1 to 4 pixels per beat) and
take each through init -> rtl -> lint -> sim on Verilator: a stall-free run (every word
bit-exact, cycles/frame vs the analytic model), a run with random valid/ready stalls and a
reset in mid-frame. Prints a summary table; every failure names its seed and the command that
replays it. Exit status 1 when any design fails.

example:
  dupnet regress --random 20 --seed 100 --jobs 2
  dupnet regress --seed 117 --random 1          # replay one design
"""


def add_arguments(p):
    p.add_argument("--random", type=int, default=10, metavar="N",
                   help="number of random designs (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the first design; design k has seed S+k (default 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="designs run at a time, each in its own process (default 1)")
    p.add_argument("-o", "--output", default="runs/regress", metavar="DIR",
                   help="run folder, one sub-folder per seed (default runs/regress)")


def run(args):
    from dupnet.errors import DupnetError
    from dupnet.files import atomic_write_text, check_output_dir
    from dupnet.sim.regress import run_regression, summary_table

    if args.random < 1:
        raise DupnetError(f"--random must be a positive number of designs, got {args.random}")
    if args.jobs < 1:
        raise DupnetError(f"--jobs must be >= 1, got {args.jobs}")
    out = check_output_dir(args.output)
    seeds = list(range(args.seed, args.seed + args.random))

    def log(r):
        state = "passed" if r.ok else f"FAILED at {r.stage}"
        print(f"seed {r.seed}: {state} ({r.seconds:.0f} s) {r.design}", flush=True)
        if not r.ok:
            print(f"  {r.message.strip()[:2000]}", flush=True)

    results = run_regression(seeds, out, jobs=args.jobs, log=log)
    table = summary_table(results)
    atomic_write_text(out / "summary.txt", table + "\n")
    print(table)
    return 0 if all(r.ok for r in results) else 1

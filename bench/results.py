"""What the comparison scripts' tables share: the runs `ballot bench --json` recorded (one JSON
object per line, as bench/lib.sh's `run` writes them) and their medians over rounds."""
import json
import statistics


class Results:
    """The recorded runs of one script."""

    def __init__(self, path):
        self.rows = [json.loads(line) for line in open(path)]

    def median(self, target, name, pick):
        """The median of `pick(run)` over the rounds of `target`'s run `name` (NaN if none)."""
        values = [pick(r) for r in self.rows if r["target"] == target and r["name"] == name]
        return statistics.median(values) if values else float("nan")


def cpu(run):
    """The servers' CPU per operation, µs (NaN if they did not run on this machine)."""
    return run["server_cpu"]["us_per_op"] if run.get("server_cpu") else float("nan")

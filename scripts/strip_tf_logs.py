"""Drop TensorFlow's start-up log lines from the stderr outputs of executed notebooks.

TensorFlow's C++ runtime writes lines such as ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` and ``I0000 ... oneDNN custom
operations are on`` at import, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they teach nothing.
Other stderr text (warnings of the library, progress) is kept.

    python scripts/strip_tf_logs.py notebooks/*.ipynb
"""

import re
import sys

import nbformat

TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:)")


def strip(path: str) -> bool:
    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                kept = "".join(line for line in output["text"].splitlines(keepends=True)
                               if not TF_LOG.match(line))
                changed |= kept != output["text"]
                if not kept:
                    continue
                output["text"] = kept
            outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
    if changed:
        nbformat.write(notebook, path)
    return changed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        if strip(name):
            print(f"stripped TensorFlow start-up logs from {name}")

# Sourced by the PyTorch comparison scripts (run from the repository root):
# a venv under target/ with torch and numpy, and hinrec built for release.
venv=target/torch-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import torch' 2>/dev/null || "$venv/bin/pip" install -q torch numpy
cargo build --release -q -p hinrec

"""``python -m nnst_hr``: the ``nnst-hr`` command line."""

from nnst_hr.cli import app

if __name__ == "__main__":
    app(prog_name="nnst-hr")

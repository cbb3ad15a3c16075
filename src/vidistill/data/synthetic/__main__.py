"""``python -m vidistill.data.synthetic``: see :mod:`vidistill.data.synthetic.cli`."""

from vidistill.data.synthetic.cli import main

if __name__ == "__main__":
    main()

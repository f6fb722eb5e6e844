"""``python -m toolkit``: the course's LightningCLI (see :mod:`toolkit.cli`), plus ``serve`` and
``registry`` (see :mod:`toolkit.deploy.cli`)."""

import sys

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "registry"):
        from toolkit.deploy.cli import main as deploy_main

        sys.exit(deploy_main(sys.argv[1:]))
    from toolkit.cli import main

    main()

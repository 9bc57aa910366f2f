"""How tests start the learn-kit CLI: in this interpreter, alone or under torchrun."""

import sys

CLI = [sys.executable, "-m", "learnkit.cli"]


def torchrun(port: int, processes: int = 2) -> list[str]:
    """The CLI as `processes` torchrun workers; each test its own port, so that tests never meet."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), "-m", "learnkit.cli"]  # fmt: skip

"""The search configuration (the real one is an OmegaConf tree; plain dataclasses here)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    model: str = "gpt-4o-2024-11-20"
    temp: float = 1.0


@dataclass
class SearchConfig:
    num_drafts: int = 2
    debug_prob: float = 0.5
    max_debug_depth: int = 3


@dataclass
class StagesConfig:
    stage1_max_iters: int = 4
    stage2_max_iters: int = 4
    stage3_max_iters: int = 4
    stage4_max_iters: int = 4


@dataclass
class SeedConfig:
    num_seeds: int = 2


@dataclass
class AgentConfig:
    num_workers: int = 2
    steps: int = 4
    code: ModelConfig = field(default_factory=ModelConfig)
    feedback: ModelConfig = field(default_factory=lambda: ModelConfig("gpt-4o-mini-2024-07-18", 0.5))
    search: SearchConfig = field(default_factory=SearchConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    multi_seed_eval: SeedConfig = field(default_factory=SeedConfig)
    start_method: str | None = None  # None: the platform default (fork on Linux), as upstream


@dataclass
class ExecConfig:
    timeout: float = 60.0
    agent_file_name: str = "runfile.py"


@dataclass
class Config:
    workspace_dir: str = "workspaces/0-run"
    log_dir: str = "logs/0-run"
    agent: AgentConfig = field(default_factory=AgentConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)

    def copy(self) -> Config:
        return copy.deepcopy(self)

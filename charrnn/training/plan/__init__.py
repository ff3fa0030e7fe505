"""The one planner: a run's budget, and the sizes, dropout, weight decay, learning rate and batch
it buys on this device for this corpus.

- `budget.py` reads the budget (the only module that does);
- `rule.py` is the pure rule from measured speed and corpus size to a plan;
- `timing.py` times candidate shapes on the real device and fills a run's open sizes;
- `replan.py` plans dropout and weight decay again from the speed training delivers.
"""

from .budget import AUTO, BUDGET_FIELDS, DEFAULT_BUDGET, Budget, resolve_budget, with_budget
from .replan import Replanner, describe_replan
from .rule import EVAL_SHARE, SizePlan, plan_size
from .timing import choose_sizes, plan_run

__all__ = [
    "AUTO",
    "BUDGET_FIELDS",
    "DEFAULT_BUDGET",
    "EVAL_SHARE",
    "Budget",
    "SizePlan",
    "Replanner",
    "choose_sizes",
    "describe_replan",
    "plan_run",
    "plan_size",
    "resolve_budget",
    "with_budget",
]

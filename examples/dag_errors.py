"""Malformed graphs are rejected with typed errors that name the tasks involved."""

import sluicegate as sg

cyclic = sg.DagCompletionTracker()
cyclic.add("a", depends_on=["c"])
cyclic.add("b", depends_on=["a"])
cyclic.add("c", depends_on=["b"])
try:
    cyclic.seal()
except sg.errors.DependencyCycleError as exc:
    print("cycle:", exc.cycle)

dangling = sg.DagCompletionTracker()
dangling.add("a", depends_on=["ghost"])
try:
    dangling.seal()
except sg.errors.UnknownDependencyError as exc:
    print("unknown:", exc.task_id, "->", exc.missing)

twice = sg.DagCompletionTracker()
twice.add("a")
try:
    twice.add("a")
except sg.errors.DuplicateTaskError as exc:
    print("duplicate:", exc.task_id)

try:
    twice.add("b", resources={"submission": 0})
except sg.ConfigurationError as exc:
    print("bad resources:", exc.field)

# All graph errors share one base class (also a ValueError).
assert issubclass(sg.errors.DependencyCycleError, sg.errors.TaskGraphError)
print(
    "all graph errors are TaskGraphError:", issubclass(sg.errors.TaskGraphError, sg.SluicegateError)
)

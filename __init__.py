"""ProSetting: Socratic-Zero co-evolution of Solver, Teacher and Generator."""

__version__ = "0.1.0"

"""The task-success benchmark: generated data sets and questions with computed answers."""

"""The app's roof: the stage runner, the run layout, the stages, and the run report with its summary."""

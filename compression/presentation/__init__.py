"""Presentation: pure tables, figures and the HTML report, as functions of result rows (pandas/plotly, never
Gradio), shared by the dashboard, the CLI and published runs."""

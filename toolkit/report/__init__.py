"""The model report card (notebook 07): one call evaluates a model along every axis of the course."""

from toolkit.report.card import METRICS, evaluate_model, gate_rules, missing_axes, report_card, summarize_card
from toolkit.report.render import card_html, card_markdown, plot_dashboard

__all__ = ["METRICS", "card_html", "card_markdown", "evaluate_model", "gate_rules", "missing_axes", "plot_dashboard",
           "report_card", "summarize_card"]

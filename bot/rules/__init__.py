"""The court's rules: tickets and routing, deadlines, escalation, mediation, enforcement, staff, figures, imports. They speak data, never wording."""

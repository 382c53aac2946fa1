"""Label quality and what to label next: audit.py (masks a model disagrees with, scored out of fold) and
suggest.py (unlabelled images ranked for labelling), with ranking.py's scores."""

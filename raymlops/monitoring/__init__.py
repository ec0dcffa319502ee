"""Monitoring: drift detectors fitted on the training reference and run in Ray actors."""

"""Textual inversion training (Gal et al. 2022): create an embedding, train its vectors on captioned
images with the diffusion loss while the model stays frozen. training.py is the engine, service.py
the glue to the app context (files, job queue, previews). Also A1111's `modules.textual_inversion`
package path for extensions: `dataset.re_numbers_at_start` (Dataset Tag Editor imports it)."""

// Submits forms marked data-autosubmit (the provider hand-off). A file, not inline, for the CSP.
document.querySelectorAll("form[data-autosubmit]").forEach(function (form) { form.submit(); });

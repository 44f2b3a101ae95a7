// Passkeys on the account pages and the console's sign-in. A button marked
// data-passkey="create" or "get" carries, in data-options, the options the server
// made for this page; a click asks the browser for a passkey with them, puts the
// browser's answer (as JSON) in the form's "credential" field and sends the form.
// Nothing else runs: no inline script, nothing from another site.
"use strict";

function passkeysUsable() {
  return Boolean(
    window.PublicKeyCredential &&
      PublicKeyCredential.parseCreationOptionsFromJSON &&
      PublicKeyCredential.parseRequestOptionsFromJSON
  );
}

async function askBrowser(kind, options) {
  if (kind === "create") {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    return navigator.credentials.create({ publicKey });
  }
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  return navigator.credentials.get({ publicKey });
}

function say(form, text) {
  const line = form.querySelector("[data-passkey-status]");
  if (line) {
    line.textContent = text;
    line.hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-passkey]")) {
    const form = button.form;
    if (!passkeysUsable()) {
      button.disabled = true;
      say(form, "This browser cannot use passkeys.");
      continue;
    }
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        const options = JSON.parse(button.dataset.options);
        const credential = await askBrowser(button.dataset.passkey, options);
        form.elements.credential.value = JSON.stringify(credential.toJSON());
        form.submit();
      } catch (error) {
        button.disabled = false;
        say(form, "No passkey was used (" + error.name + "). You can try again.");
      }
    });
  }
});

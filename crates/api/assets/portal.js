// websessions' pages (SPEC section 10): signing in and the account page's actions, through
// the /v1 API like any other client. No inline script: the pages' policy allows this file only.
"use strict";

function say(text, ok) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.classList.toggle("ok", Boolean(ok));
  message.hidden = false;
}

// Keeps keyboard users where they were: on the button, or on the message when the button has
// gone with its row.
function refocus(button) {
  if (button.isConnected) {
    button.focus();
  } else {
    document.getElementById("message").focus();
  }
}

function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

// "Try again in ..." from a Retry-After header in seconds.
function later(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  if (!Number.isFinite(seconds)) return "Try again later.";
  if (seconds === 1) return "Try again in a second.";
  if (seconds < 90) return `Try again in ${seconds} seconds.`;
  return `Try again in ${Math.ceil(seconds / 60)} minutes.`;
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    say("The service could not be reached. Try again.");
  } finally {
    button.disabled = false;
    refocus(button);
  }
}

// After a session other than this one has ended: the list, and whether any other is left.
function othersLeft() {
  const left = document.querySelectorAll("#sessions li:not(.current)").length;
  document.getElementById("end-others").hidden = left === 0;
}

function signIn(form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(form.querySelector("button"), async () => {
      const response = await api("POST", "/v1/session/login", {
        username: form.elements.username.value,
        password: form.elements.password.value,
        client: "browser",
      });
      if (response.ok) {
        // Validated by the server (SPEC section 10): a path here, or a trusted origin.
        window.location.assign(form.dataset.returnTo);
      } else if (response.status === 423) {
        say(`This account is locked after too many failed sign-ins. ${later(response)}`);
      } else if (response.status === 429) {
        say(`Too many sign-in attempts from your address. ${later(response)}`);
      } else if (response.status === 503) {
        say(`The service is busy. ${later(response)}`);
      } else {
        // One message for every other cause (R5c).
        say("The username or password is not right.");
      }
    });
  });
}

// Sends a signed-out browser to sign in again, back to this page.
function signInAgain() {
  window.location.replace("/login?return_to=/account");
}

function account() {
  // A page restored from the back-forward cache shows nothing stale: it asks again.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) window.location.reload();
  });
  for (const button of document.querySelectorAll("button[data-end]")) {
    button.addEventListener("click", () => busy(button, async () => {
      const response = await api("DELETE", `/v1/me/sessions/${button.dataset.end}`);
      if (response.status === 401) return signInAgain();
      if (response.ok || response.status === 404) {
        button.closest("li").remove();
        othersLeft();
        say("That session has been signed out.", true);
      } else {
        say(`That session could not be signed out. ${later(response)}`);
      }
    }));
  }
  const others = document.getElementById("end-others");
  others.addEventListener("click", () => busy(others, async () => {
    const response = await api("DELETE", "/v1/me/sessions");
    if (response.status === 401) return signInAgain();
    if (!response.ok) return say(`The other sessions could not be signed out. ${later(response)}`);
    for (const item of document.querySelectorAll("#sessions li:not(.current)")) item.remove();
    othersLeft();
    say("Every other session has been signed out.", true);
  }));
  const form = document.getElementById("password-change");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const current = document.getElementById("current-password");
    const fresh = document.getElementById("new-password");
    const again = document.getElementById("confirm-password");
    if (fresh.value !== again.value) return say("The new passwords differ.");
    busy(form.querySelector("button"), async () => {
      const response = await api("PUT", "/v1/session/password", {
        current_password: current.value,
        new_password: fresh.value,
      });
      if (response.status === 401) return signInAgain();
      if (response.ok) {
        form.reset();
        for (const item of document.querySelectorAll("#sessions li:not(.current)")) item.remove();
        othersLeft();
        return say("Your password has been changed, and your other sessions signed out.", true);
      }
      if (response.status === 403) return say("The current password is not right.");
      if (response.status === 423) return say(`Too many failed attempts. ${later(response)}`);
      if (response.status === 422) {
        const problem = await response.json().catch(() => ({}));
        return say(problem.detail || "The new password cannot be used.");
      }
      say(`The password could not be changed. ${later(response)}`);
    });
  });
  const signOut = document.getElementById("sign-out");
  signOut.addEventListener("click", () => busy(signOut, async () => {
    const response = await api("POST", "/v1/session/logout");
    if (!response.ok && response.status !== 401) {
      // Not signed out (the service is unavailable): say so rather than pretend.
      return say(`You are still signed in: signing out failed. ${later(response)}`);
    }
    // The account page stays in the history; going back asks the server for it again
    // (no-store), which sends the browser to sign in.
    window.location.assign("/login");
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in");
  if (form) signIn(form);
  if (document.getElementById("sessions")) account();
});

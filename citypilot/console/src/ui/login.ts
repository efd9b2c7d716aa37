// The login screen: the only thing shown before a session exists.

import { Api, ApiError } from "../api";
import { fromAnswer, type Session } from "../auth";
import { h } from "./dom";

/** Show the login form in ``root``; resolves with the new session. */
export function showLogin(root: HTMLElement, api: Api, message = ""): Promise<Session> {
  return new Promise((resolve) => {
    const user = h("input", {
      name: "username",
      autocomplete: "username",
      required: true,
      autofocus: true,
      "data-testid": "login-username",
    });
    const pass = h("input", {
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
      "data-testid": "login-password",
    });
    const error = h("p", { class: "login-error", role: "alert", "data-testid": "login-error" }, message);
    const submit = h("button", { type: "submit", "data-testid": "login-submit" }, "Sign in");
    const form = h(
      "form",
      { class: "login-card", "data-testid": "login-form" },
      h("div", { class: "brand brand-big" }, h("span", { class: "brand-mark" }), "CityPilot"),
      h("p", { class: "login-sub" }, "Control room"),
      h("label", {}, "User name", user),
      h("label", {}, "Password", pass),
      submit,
      error,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      error.textContent = "";
      const startedAt = performance.now();
      try {
        const answer = await api.login(user.value.trim(), pass.value);
        resolve({ ...fromAnswer(answer, user.value.trim()), loginStartedAt: startedAt });
      } catch (e) {
        error.textContent =
          e instanceof ApiError && e.status === 401
            ? "Unknown user name or wrong password."
            : `Cannot sign in: ${(e as Error).message}`;
        submit.disabled = false;
        pass.select();
      }
    });
    root.replaceChildren(h("div", { class: "login-screen" }, form));
    user.focus();
  });
}

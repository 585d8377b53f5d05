// The global helpers A1111's page offers to extensions' javascript/*.js (A1111 v1.10 names), for
// this web UI's Gradio 6 page. Loaded in the page head before the extensions' files.
// gradioApp(), onUiLoaded(), onUiUpdate(), onAfterUiUpdate(), onUiTabChange(), onOptionsChanged(),
// get_uiCurrentTab(), get_uiCurrentTabContent(), uiElementIsVisible(), uiElementInSight(),
// updateInput(), get_tab_index(), switch_to_txt2img(), switch_to_img2img(), opts, localization.
(function () {
    "use strict";
    var uiUpdateCallbacks = [], uiAfterUpdateCallbacks = [], uiLoadedCallbacks = [],
        uiTabChangeCallbacks = [], optionsChangedCallbacks = [], optionsAvailableCallbacks = [];
    var afterUpdateTimer = null, loaded = false, currentTab = null;

    // Gradio 3's page had `#id > label > textarea` (and `> label > input`); Gradio 6 puts a
    // div.input-container between them. Extensions' selectors through gradioApp() are translated.
    function gradio3Selector(selector) {
        return String(selector).replace(/>\s*label\s*>\s*(textarea|input)/g, "> label $1");
    }

    function withGradio3Selectors(elem) {
        if (elem.__gradio3Selectors) return elem;
        var one = elem.querySelector.bind(elem), all = elem.querySelectorAll.bind(elem);
        elem.querySelector = function (s) { return one(gradio3Selector(s)); };
        elem.querySelectorAll = function (s) { return all(gradio3Selector(s)); };
        elem.__gradio3Selectors = true;
        return elem;
    }

    window.gradioApp = function () {
        var elems = document.getElementsByTagName("gradio-app");
        var elem = elems.length === 0 ? document : elems[0];
        if (elem !== document && !elem.getElementById) {
            elem.getElementById = function (id) { return document.getElementById(id); };
        }
        return elem.shadowRoot ? elem.shadowRoot : (elem === document ? elem : withGradio3Selectors(elem));
    };

    function topTabButtons() {
        return Array.prototype.slice.call(
            gradioApp().querySelectorAll("#tabs button[role='tab']")).filter(function (b) {
            return b.closest("#tabs") === document.getElementById("tabs") && !b.closest("#tabs .tabitem, #tabs [role='tabpanel']");
        });
    }

    // the selected top-level tab's button (A1111: `#tabs > .tab-nav > button.selected`)
    window.get_uiCurrentTab = function () {
        return topTabButtons().filter(function (b) { return b.getAttribute("aria-selected") === "true"; })[0] || null;
    };

    // the visible top-level tab's content (its elem_id is tab_txt2img, tab_img2img...)
    window.get_uiCurrentTabContent = function () {
        var panels = gradioApp().querySelectorAll("#tabs [id^='tab_']");
        for (var i = 0; i < panels.length; i++) {
            var p = panels[i];
            if (p.id.indexOf("-button") < 0 && p.parentElement && p.parentElement.closest("[id^='tab_']") === null &&
                window.uiElementIsVisible(p)) {
                return p;
            }
        }
        return null;
    };

    window.get_tab_index = function (tabId) {
        var buttons = gradioApp().querySelectorAll("#" + tabId + " button[role='tab']");
        for (var i = 0; i < buttons.length; i++) {
            if (buttons[i].getAttribute("aria-selected") === "true") return i;
        }
        return 0;
    };

    function switchTo(name) {
        var b = topTabButtons().filter(function (x) { return x.textContent.trim() === name; })[0];
        if (b) b.click();
    }
    window.switch_to_txt2img = function () { switchTo("txt2img"); return Array.prototype.slice.call(arguments); };
    window.switch_to_img2img = function () { switchTo("img2img"); return Array.prototype.slice.call(arguments); };
    window.switch_to_extras = function () { switchTo("Extras"); return Array.prototype.slice.call(arguments); };

    window.uiElementIsVisible = function (el) {
        if (el === document) return true;
        var style = window.getComputedStyle(el);
        if (style.display === "none" || style.visibility === "hidden") return false;
        return el.parentElement ? window.uiElementIsVisible(el.parentElement) : true;
    };
    window.uiElementInSight = function (el) {
        var rect = el.getBoundingClientRect();
        return rect.top >= 0 && rect.bottom <= (window.innerHeight || document.documentElement.clientHeight);
    };

    // what extensions call after setting a textbox's value from script: Gradio listens to "input"
    window.updateInput = function (target) {
        var e = new Event("input", {bubbles: true});
        Object.defineProperty(e, "target", {value: target});
        target.dispatchEvent(e);
    };

    window.onUiUpdate = function (cb) { uiUpdateCallbacks.push(cb); };
    window.onAfterUiUpdate = function (cb) { uiAfterUpdateCallbacks.push(cb); };
    window.onUiLoaded = function (cb) { uiLoadedCallbacks.push(cb); if (loaded) run(cb, undefined, "onUiLoaded"); };
    window.onUiTabChange = function (cb) { uiTabChangeCallbacks.push(cb); };
    window.onOptionsChanged = function (cb) { optionsChangedCallbacks.push(cb); };
    window.onOptionsAvailable = function (cb) { optionsAvailableCallbacks.push(cb); if (loaded) run(cb, undefined, "onOptionsAvailable"); };

    function run(cb, arg, name) {
        try {
            cb(arg);
        } catch (e) {
            console.error("error running an extension's " + name + " callback:", cb, e);
        }
    }
    window.executeCallbacks = function (queue, arg) {
        queue.forEach(function (cb) { run(cb, arg, "ui"); });
    };

    window.localization = window.localization || {};
    window.titles = window.titles || {};  // A1111's tooltips by label text (extensions add theirs)
    window.getTranslation = function (text) { return window.localization[text] || text; };

    // "loaded" (A1111: once #txt2img_prompt exists): Gradio 6 renders the page in several passes,
    // so the callbacks run once the page has been still for 200 ms (at most 3 s after the prompt
    // box appeared), when the extensions' elements are there too
    var settleTimer = null, firstSeen = null, starting = false;
    function markLoaded() {
        if (loaded || starting) return;
        starting = true;
        prerenderTabs(function () {
            loaded = true;
            window.uiLoadedCallbacksRan = true;  // tests wait for this
            executeCallbacks(uiLoadedCallbacks);
            executeCallbacks(optionsAvailableCallbacks);
            executeCallbacks(optionsChangedCallbacks);
        });
    }

    // A1111's page had every top-level tab's content in it from the start (hidden); Gradio 6 adds a
    // tab's content the first time it is shown, and keeps it after. Extensions' javascript looks
    // for #img2img_prompt and the like when the page loads, so each tab is shown once, briefly.
    function prerenderTabs(done) {
        var buttons = topTabButtons(), selected = window.get_uiCurrentTab();
        var missing = buttons.filter(function (b) {
            var id = (b.id || "").replace(/-button$/, "");
            return id && !document.getElementById(id);
        });
        var step = function (i) {
            if (i >= missing.length) {
                if (selected && missing.length) selected.click();
                setTimeout(done, missing.length ? 100 : 0);
                return;
            }
            missing[i].click();
            var id = missing[i].id.replace(/-button$/, ""), waited = 0;
            var wait = function () {
                if (document.getElementById(id) || waited > 2000) return step(i + 1);
                waited += 25;
                setTimeout(wait, 25);
            };
            wait();
        };
        step(0);
    }

    function onMutations(mutations) {
        if (!loaded && gradioApp().querySelector("#txt2img_prompt")) {
            firstSeen = firstSeen || Date.now();
            if (settleTimer) clearTimeout(settleTimer);
            settleTimer = setTimeout(markLoaded, Date.now() - firstSeen > 3000 ? 0 : 200);
        }
        executeCallbacks(uiUpdateCallbacks, mutations);
        var tab = window.get_uiCurrentTab();
        if (loaded && tab && tab !== currentTab) {
            currentTab = tab;
            executeCallbacks(uiTabChangeCallbacks);
        }
        if (afterUpdateTimer) clearTimeout(afterUpdateTimer);
        afterUpdateTimer = setTimeout(function () { executeCallbacks(uiAfterUpdateCallbacks); }, 200);
    }

    // Gradio adds the page head's scripts after the document has loaded: start now if it has
    function start() {
        new MutationObserver(onMutations).observe(gradioApp(), {childList: true, subtree: true});
        onMutations([]);
    }
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

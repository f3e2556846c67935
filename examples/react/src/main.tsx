import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { LatticeProvider } from '@latticesync/web/react';
import { App } from './App';
import { currentUser, openDb } from './db/db';
import './styles.css';

const root = createRoot(document.getElementById('root')!);
const user = currentUser();

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  // Caches the app shell, so a reload with no network still starts the app.
  navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('service worker:', err));
}

root.render(<div className="boot">Opening the local database…</div>);
openDb(user).then(
  (db) => {
    // For the end-to-end tests and the benchmark (they read the local database).
    (window as unknown as { lattice: unknown }).lattice = db;
    root.render(
      <StrictMode>
        <LatticeProvider db={db}>
          <App user={user} />
        </LatticeProvider>
      </StrictMode>,
    );
  },
  (err) => {
    root.render(
      <div className="boot error-note" role="alert">
        Could not open the local database: {String(err?.message ?? err)}
      </div>,
    );
  },
);

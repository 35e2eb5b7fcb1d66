// The Java middle hop (HttpServer on a thread pool + HttpClient): calls BACK_PORT at
// /backend<path>.
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.concurrent.Executors;

public class Main {
    public static void main(String[] args) throws Exception {
        String back = System.getenv("BACK_PORT");
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpServer s = HttpServer.create(
            new InetSocketAddress("127.0.0.1", Integer.parseInt(System.getenv("PORT"))), 256);
        s.setExecutor(Executors.newFixedThreadPool(16));
        s.createContext("/", ex -> {
            try {
                URI uri = URI.create("http://127.0.0.1:" + back + "/backend" + ex.getRequestURI().getPath());
                byte[] b = client.send(HttpRequest.newBuilder(uri).build(),
                    HttpResponse.BodyHandlers.ofByteArray()).body();
                ex.sendResponseHeaders(200, b.length);
                ex.getResponseBody().write(b);
            } catch (Exception e) {
                ex.sendResponseHeaders(502, -1);
            }
            ex.close();
        });
        s.start();
    }
}

from orderflow.notify.app import create_service
from orderflow.runtime.service import main

if __name__ == "__main__":
    main(create_service())

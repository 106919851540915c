#ifndef PKG05_L05_08_H
#define PKG05_L05_08_H
#include <string>
#include <vector>

namespace l05_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_08

#endif

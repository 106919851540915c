#ifndef PKG05_L05_05_H
#define PKG05_L05_05_H
#include <string>
#include <vector>

namespace l05_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_05

#endif

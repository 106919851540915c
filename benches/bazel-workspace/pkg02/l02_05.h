#ifndef PKG02_L02_05_H
#define PKG02_L02_05_H
#include <string>
#include <vector>

namespace l02_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_05

#endif
